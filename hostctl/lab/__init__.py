"""Lab equipment controllers (serial gear): the GSM modem driver."""
