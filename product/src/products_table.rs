//! The `products` table: the statements the catalog runs and how a row
//! becomes a [`Product`]. Migrations: `product/migrations/`.

use serde::Serialize;
use shared::db::{Database, DbError, Statement};
use sqlx::{any::AnyRow, Row};

/// One product.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Product {
    /// Stable id.
    pub id: u32,
    /// Display name.
    pub name: String,
    /// Price in the shop's currency (stored in cents).
    pub price: f64,
    /// Category (`electronics`, `books`, `home`, `sports`, `grocery`).
    pub category: String,
    /// Units in stock.
    pub stock: u32,
}

/// One page of products and how many matched in all.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProductPage {
    /// The products on this page.
    pub items: Vec<Product>,
    /// How many products matched in all.
    pub total: usize,
}

/// A page and, in the same statement, the number of matching rows.
const SELECT_PAGE: Statement = Statement {
    operation: "SELECT",
    collection: "products",
    text: "SELECT id, name, price_cents, category, stock, COUNT(*) OVER () AS total \
           FROM products WHERE ($1 IS NULL OR category = $1) \
           ORDER BY id LIMIT $2 OFFSET $3",
};

/// The total alone, for a page past the end (which has no row to carry it).
const COUNT: Statement = Statement {
    operation: "SELECT",
    collection: "products",
    text: "SELECT COUNT(*) AS total FROM products WHERE ($1 IS NULL OR category = $1)",
};

const SELECT_ONE: Statement = Statement {
    operation: "SELECT",
    collection: "products",
    text: "SELECT id, name, price_cents, category, stock FROM products WHERE id = $1",
};

/// Products of `category` (all when `None`), `limit` of them from `offset`.
pub async fn list(
    db: &Database,
    category: Option<String>,
    limit: usize,
    offset: usize,
) -> Result<ProductPage, DbError> {
    let rows = db
        .query(&SELECT_PAGE)
        .bind(category.clone())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        // Past i64::MAX is past the end all the same.
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(db.reader())
        .await?;
    let total = match rows.first() {
        Some(row) => row.try_get::<i64, _>("total")?,
        None if offset == 0 => 0,
        None => db
            .query(&COUNT)
            .bind(category)
            .fetch_optional(db.reader())
            .await?
            .map(|row| row.try_get::<i64, _>("total"))
            .transpose()?
            .unwrap_or(0),
    };
    Ok(ProductPage {
        items: rows.iter().map(product).collect::<Result<_, _>>()?,
        total: usize::try_from(total).unwrap_or(0),
    })
}

/// One product by id.
pub async fn get(db: &Database, id: u32) -> Result<Option<Product>, DbError> {
    db.query(&SELECT_ONE)
        .bind(i64::from(id))
        .fetch_optional(db.reader())
        .await?
        .map(|row| product(&row))
        .transpose()
}

fn product(row: &AnyRow) -> Result<Product, DbError> {
    let cents: i64 = row.try_get("price_cents")?;
    let number = |column: &str| -> Result<u32, DbError> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| {
            DbError::Sqlx(sqlx::Error::Decode(
                format!("products.{column} = {value} is out of range").into(),
            ))
        })
    };
    Ok(Product {
        id: number("id")?,
        name: row.try_get("name")?,
        price: cents as f64 / 100.0,
        category: row.try_get("category")?,
        stock: number("stock")?,
    })
}
