"""PartyKit client side: PartySocket and the PartyKit persister."""
