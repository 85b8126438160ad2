"""What many tests share: keys (``keys.py``), the error-log guard (``logs.py``)."""
