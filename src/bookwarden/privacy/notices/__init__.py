"""The institution's privacy notice: versions, the one in force, receipts of what was shown at collection."""
