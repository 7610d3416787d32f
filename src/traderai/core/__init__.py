"""The pure core: signal math, features, filters. No boto3, no network, no clock, no env."""
