"""The service side of the Redis request transport."""
