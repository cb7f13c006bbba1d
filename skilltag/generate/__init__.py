"""``skilltag generate``: job-ad sentences for every ESCO skill from any OpenAI-compatible chat API."""
