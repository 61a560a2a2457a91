"""The dashboard's UI helpers: widgets, colours and cached loaders over ``core``."""
