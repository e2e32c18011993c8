"""Shared test helpers: ports, Node peers, partykit dev, servers."""
