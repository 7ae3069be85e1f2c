"""Working with other copies of the store: remotes (clone, push, pull with replay), merging proposal
branches, and replaying recorded operations onto another head."""
