"""Methods CosPlace is compared with, trained on the same data with the same network."""
