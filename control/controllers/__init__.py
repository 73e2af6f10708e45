"""The controller-manager's control loops (``manager.py`` runs them)."""
