"""The stock PyTorch LeNet-5 of the reference tutorial (section 8), verbatim in structure: the
baseline every test and benchmark compares lenet_fast against."""
import torch
import torch.nn as nn


class TorchLeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, stride=1, padding=2)  # 6x28x28
        self.pool1 = nn.AvgPool2d(kernel_size=2, stride=2)  # 6x14x14
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # 16x10x10
        self.pool2 = nn.AvgPool2d(kernel_size=2, stride=2)  # 16x5x5
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = torch.tanh(self.conv1(x))
        x = self.pool1(x)
        x = torch.tanh(self.conv2(x))
        x = self.pool2(x)
        x = x.view(x.size(0), -1)
        x = torch.tanh(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        return self.fc3(x)
