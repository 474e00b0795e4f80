"""Inputs: the doors through which operators hand messages to a node."""
