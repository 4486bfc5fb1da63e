"""The arena's use cases, one family per module; they reach the database through storage."""
