"""deployer: continuous deployment from registry push webhooks."""
