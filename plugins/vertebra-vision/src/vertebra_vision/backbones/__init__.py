"""Image backbones: `ResNet` and `ConvNet`."""
