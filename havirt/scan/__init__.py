"""The fresh scan: what every node says now, folded into the state, and the anomalies it shows."""
