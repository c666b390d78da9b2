"""The trio runtime of one connected station: its tasks, handlers, events and machines."""
