"""sensormail: turns machine emails received by Amazon SES into link-carrying notifications."""

__version__ = "0.1.0"
