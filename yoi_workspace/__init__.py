"""yoi-workspace: the backend's RuntimeRegistry and browser-facing API.

Not built yet: see the project's issue on the workspace backend.
"""
