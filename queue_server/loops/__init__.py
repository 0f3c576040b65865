"""Background loops that every service replica runs beside the request consumer."""
