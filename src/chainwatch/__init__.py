"""chainwatch: detect, expose and prevent compromised npm releases."""

__version__ = "0.1.0"
