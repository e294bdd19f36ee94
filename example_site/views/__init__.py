"""Page handlers of the example site, one module per area."""
