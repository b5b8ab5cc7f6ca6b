curl "https://screenshotapi.to/api/v1/credits/transactions?limit=10&offset=0" \
--cookie "session=your_session_cookie"
