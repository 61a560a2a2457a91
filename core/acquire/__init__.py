"""Get data: NED's classification pages, its image listings and files, an import, or the built-in sample; the catalogue and labels."""
