"""The pure core: model, settings, IP lookup and the fetching policy. Standard library only."""
