package mnist_test

import (
	"fmt"

	"github.com/fedguard/fedguard/data/mnist"
)

func ExampleLoad() {
	// An empty folder means Dir(): the GoMNIST module in the module cache.
	train, test, err := mnist.Load("")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(train.Images), "training and", len(test.Images), "test images of", mnist.Features, "pixels")
	fmt.Println("first training label:", train.Labels[0])
	// Output:
	// 60000 training and 10000 test images of 784 pixels
	// first training label: 5
}
