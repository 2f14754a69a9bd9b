"""Shared test code (fixture builders, fakes, dataset files in real formats): test modules import it and
never import each other."""
