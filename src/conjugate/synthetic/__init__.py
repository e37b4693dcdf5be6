"""The synthetic study: in-context linear regression over a discrete + Gaussian task mixture."""
