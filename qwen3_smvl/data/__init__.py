"""The data path: train_data entries -> rows of one shape -> checked, counted, packed, collated batches."""
