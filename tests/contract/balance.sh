curl "https://screenshotapi.to/api/v1/credits" \
--cookie "session=your_session_cookie"
