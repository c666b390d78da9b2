"""What the CSMS knows about a station, as plain frozen records and pure functions: EVSEs and
connectors, transactions, reports, the device model, credentials, and how observed exchanges
change them.  Nothing here imports trio."""
