"""Operating Document Vault: the benchmark, the ECS task definition renderer, deployment scripts."""
