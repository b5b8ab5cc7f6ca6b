import requests
response = requests.get(
"https://screenshotapi.to/api/v1/credits",
cookies={"session": "your_session_cookie"}
)
balance = response.json()["balance"]
print(f"Remaining credits: {balance}")
