"""The stream engine: from a claimed reply to the model's stream, and its deltas onto the channel
layer."""
