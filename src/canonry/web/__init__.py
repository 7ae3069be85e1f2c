"""The web catalog: a read-only view of the store, served live (`canonry serve`, app.py) or
written as static files (`canonry site build`, site.py), both from the same pages (pages.py)."""
