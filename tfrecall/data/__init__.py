"""Development worlds and splits: the built-in synthetic logs (feed, long tail) and
the held-out / validation splits."""
