"""Examples that go with the specs in ``specs/``: operator-registered scripts."""
