"""The OMA LwM2M 1.0 object definitions 0-7 shipped as package data (XML files)."""
