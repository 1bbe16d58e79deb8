"""The built-in scorers, by job; :mod:`nightloop.score` is where a night chooses one for a case."""
