"""`nightloop ui`: review, history and the operations dashboard in the browser (FastAPI + Jinja2, no scripts)."""
