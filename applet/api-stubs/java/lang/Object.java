package java.lang;

/** Java Card's java.lang.Object: the root class, with equals() as its only method. */
public class Object {
    public Object() {
    }

    public boolean equals(Object obj) {
        return this == obj;
    }
}
