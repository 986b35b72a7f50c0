"""Continual-learning metrics, with the definitions of Avalanche / mammoth.

R[i][j] is the accuracy on task j after stage i (stages include each sleep). With `learned[j]` the stage that
finished training task j and `final` the last stage:
- average accuracy = mean_j R[final][j];
- forgetting = mean over j < T of max_{learned[j] <= i < final} R[i][j] - R[final][j];
- backward transfer (BWT) = mean over j < T of R[final][j] - R[learned[j]][j].
"""

from __future__ import annotations

import numpy as np


def average_accuracy(matrix: np.ndarray) -> float:
    return float(np.mean(matrix[-1]))


def forgetting(matrix: np.ndarray, learned: list[int]) -> float:
    final = len(matrix) - 1
    values = [matrix[learned[j]:final + 1, j].max() - matrix[final, j] if learned[j] < final else 0.0
              for j in range(len(learned) - 1)]
    return float(np.mean(values)) if values else 0.0


def backward_transfer(matrix: np.ndarray, learned: list[int]) -> float:
    values = [matrix[-1, j] - matrix[learned[j], j] for j in range(len(learned) - 1)]
    return float(np.mean(values)) if values else 0.0

