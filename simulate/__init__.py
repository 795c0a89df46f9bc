"""AWS as slow as the real one, on top of moto: for benchmarks and tests only.

Not a package users install (pyproject lists only the application's packages): nothing here is
imported by the worker or the command line.
"""
