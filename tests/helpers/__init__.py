"""Helpers shared by the test modules (imported as ``helpers.<topic>``; no tests here).

* :mod:`helpers.station`: requests, routers and a FakeStation for the CSMS-side tests;
* :mod:`helpers.client`: memory links between charge points and a CSMS;
* :mod:`helpers.admin`: a tiny HTTP client for the admin API;
* :mod:`helpers.websocket`: a WebSocket client whose stream the test owns.
"""
