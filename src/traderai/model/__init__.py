"""Model training (scikit-learn, CLI only: `train`) and serving (numpy only: `serving`)."""
