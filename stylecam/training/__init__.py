"""Training stylecam styles: perceptual losses, offline loss networks, the feed-forward trainer and recipes."""
