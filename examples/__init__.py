"""Example projects. The example app itself ships in the package: ``refluxo.examples``."""
