"""Tests of the parts: the core's built-ins and, through the registries, every installed part."""
