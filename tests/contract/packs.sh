curl "https://screenshotapi.to/api/v1/credits/packs"
