"""The built-in failure detectors, by job; :mod:`nightloop.classify` runs them over a conversation."""
