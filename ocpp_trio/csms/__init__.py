"""The central system: the station registry and its entry points, recovery, the admin API."""
