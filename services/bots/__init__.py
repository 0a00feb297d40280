"""Slack and Teams bots: cited answers in chat, with each asker's own permissions."""
