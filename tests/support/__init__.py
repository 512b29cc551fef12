"""Test support: harnesses, fakes and recording dummies shared by several test modules."""
