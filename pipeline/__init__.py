"""Orchestration, the top layer: the launcher behind distributed_test.sh (launch), its Ray backend
(ray_backend) and the studies (density). It imports agents, dataset and densepolicy; nothing
imports it but the top-level scripts and the tests."""
