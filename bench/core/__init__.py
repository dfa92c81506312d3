"""The measurement core: scenario in, measured result out (send loops, tracker, audit, recorder, result)."""
